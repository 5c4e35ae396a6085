"""Prefect tasks of the finetune flow: select training samples, train with TRL."""
