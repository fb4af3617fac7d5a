"""What a run reports: its compute and communication cost vs independent FedAvg, the run report, and
the comparison of a weight-shared run with FedAvg baselines. Reads run directories; trains nothing.
"""
