"""The reward area of medgr2: graded reward data, the regression reward model R_φ, judge seeding,
calibration reports and WordNet provisioning.

Heavy libraries (torch, transformers, nltk) are imported inside the modules that need them; the
plugin module (:mod:`medgr2_reward.plugin`) and the options (:mod:`medgr2_reward.options`) are light.
"""
