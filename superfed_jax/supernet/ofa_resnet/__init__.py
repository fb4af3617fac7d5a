"""The once-for-all ResNet family (Khare et al., arXiv 2301.10879): the supernet of the image tasks.

Elastic depth per stage and expand ratio per block; its space, layers, masked and sliced forward passes,
masks, dense subnets and closed-form cost. `family.OFAResNet` is what the rest of the package sees.
"""
