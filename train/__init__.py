"""The train stage: distil a student from the cache, replaying the recorded views."""
