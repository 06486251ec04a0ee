"""medgr2_trl: TRL trainers (sft, grpo) and GRPO reward terms for medgr2. Import submodules to use them."""
