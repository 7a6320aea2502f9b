"""Training jobs: specs, the queue and scheduler, preemption, logs and checkpoints."""
