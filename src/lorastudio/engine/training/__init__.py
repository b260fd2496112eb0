"""Training: presets, TrainConfig/TrainResult (config.py), train_lora (train.py), checkpoints, file metadata."""
