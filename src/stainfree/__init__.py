"""stainfree: stain-free live/dead classification."""
from stainfree.utils.resolvers import register_resolvers

# configs use ${scale_lr:...}; every entry point imports stainfree before composing them
register_resolvers()
