"""The extract stage: run a teacher once over recorded views and write the target cache."""
