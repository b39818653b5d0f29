"""The scripted policies of the market kernels, by name, in id order (a policy's id is its index here).

JAX-free, so the command line lists and parses them without loading a kernel; the kernels index their policy
functions by these names (`crash.FIRM_POLICIES`, `lemons.scripted_bids`)."""

FIRM_POLICIES = ("undercut", "stabilise", "costplus", "random")  # market-crash firms
SELLER_POLICIES = ("honest", "sybil")  # market-lemons sellers: honest slots, then the principal's K identities
BUYER_POLICIES = ("naive", "guardian", "bayesian")  # market-lemons buyers
