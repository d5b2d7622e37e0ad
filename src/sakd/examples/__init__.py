"""Plain PyTorch networks that show how a network of your own gets a spiking twin
(``model.name=python:sakd.examples.own_cnn:own_cnn``); nothing here imports sakd."""
