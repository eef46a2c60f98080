"""skysort HTTP service (BentoML). Usage: ``bentoml serve serving.service:Skysort``."""
