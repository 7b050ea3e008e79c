"""Routing: which tier answers a request for the virtual ``router`` model."""

from gateway.routing.policy import ConversationScorer, RoutingDecision, ThresholdPolicy
from gateway.routing.preference import RoutingPreference
from gateway.routing.scorer import ThreadedRouterScorer, load_scorer

__all__ = [
    "ConversationScorer",
    "RoutingDecision",
    "RoutingPreference",
    "ThreadedRouterScorer",
    "ThresholdPolicy",
    "load_scorer",
]
