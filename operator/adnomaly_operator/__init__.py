"""The Adnomaly Kubernetes operator: the `Pipeline` CRD (generated from the model), a pure renderer
from plan to objects, and a kopf-based controller that applies them (`adnomaly-operator`)."""
