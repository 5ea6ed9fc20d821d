"""Settings for every suite.

Hypothesis' per-example deadline is a timing assertion: on a shared 2-core CI
machine a first example can take seconds while the broker tests start up, which
fails a property that holds. Speed is measured by bench/, not by tests.
"""

from hypothesis import settings

settings.register_profile("tidemark", deadline=None)
settings.load_profile("tidemark")
