"""hf_genomics.convert"""
