"""hf_genomics.metrics"""
