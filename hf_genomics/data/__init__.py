"""hf_genomics.data"""
