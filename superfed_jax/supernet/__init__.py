"""The supernet: the elastic search space, the masked OFA-ResNet, its masks, dense subnets and their cost.

Depends on nothing else in the package; every other layer builds on it.
"""
