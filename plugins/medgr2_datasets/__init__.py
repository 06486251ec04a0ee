"""Built-in dataset sources, image loaders and the offline ``labels`` question builder.

Sources (kind ``dataset``): ``omnimedvqa``, ``medr1``, ``folders``, ``csv``, ``medmnist``,
``nifti``, ``dicom`` and ``demo``. Image loaders: ``file``, ``dicom``, ``nifti``, ``npz``,
``pkg``. Generator: ``labels``. See :mod:`medgr2_datasets.presets` for the option sets of the
shared real datasets.
"""
