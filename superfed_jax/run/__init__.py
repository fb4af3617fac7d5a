"""The training run: the driver (`train.train_and_evaluate`) and what keeps a run alive and observable:
checkpoints and resume, preemption, multi-host start-up, the memory check, progress and metric writing.
"""
