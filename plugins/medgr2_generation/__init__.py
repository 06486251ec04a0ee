"""Built-in generation backends (``gemini``, ``openai``, ``local``) and prompt strategies
(``direct``, ``step_by_step``, ``meta_cognitive``) for medgr2."""
