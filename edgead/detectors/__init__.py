"""The PyTorch side, one package per detector (model + fit, export, options); ``registry``
turns each into the ``fit`` and ``export`` verbs. Shared torch pieces live in
``edgead.components``, shared export steps in ``edgead.export``."""
