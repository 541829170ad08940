"""The request core: the handler of every model endpoint, admission to answer, one direction.

endpoint -> attempts (plan, order, retries) -> upstream (transports) -> translate/relay
(streams) -> exchange (the outcome, the ledger row). It knows no client API and no provider.
"""
