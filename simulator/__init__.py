"""The built-in Flower app: LeNet5 trained with FedAvg, MindSpore-style client logs."""
