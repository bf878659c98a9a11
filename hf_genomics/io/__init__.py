"""hf_genomics.io"""
