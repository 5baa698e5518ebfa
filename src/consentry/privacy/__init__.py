"""privacy: the controller's obligations towards data subjects and supervisory authorities.

So far the register of processors and destinations (``processors.py`` rules,
``processor_service.py`` use cases, ``ropa.py`` the Art. 30 record), with the one gate every
outgoing flow asks first, :func:`consentry.privacy.processor_service.check_transfer`.
Data-subject requests, erasure and retention arrive here with their issues.
"""
