"""Evaluation built-ins for medgr2: scoring protocols, metrics, the VQA evaluator and the studies.

Modules:
    scorers    the named, published answer-scoring protocols (kind ``scorer``)
    options    parsing options out of question text
    metrics    vectorised accuracy / F1 / balanced accuracy / AUROC / bootstrap CIs -> EvalReport
    report     predictions and report files (JSON + Markdown)
    evaluator  the ``vqa`` Evaluator (batched greedy generation, optional option log-probs)
    studies    transfer heatmaps, error transitions, data-efficiency curves
"""
