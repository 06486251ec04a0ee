"""medgr2_hf: Hugging Face models for medgr2 (tiny offline VLMs, processors, VLM loading).

Nothing heavy is imported here: import :mod:`medgr2_hf.tiny` or :mod:`medgr2_hf.vlm` to use them.
"""
