"""hf_genomics.models"""
