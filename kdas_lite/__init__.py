"""kdas_lite: a small, readable implementation of KDAS for teaching.

KDAS = "Knowledge Distillation via Attention Supervision Framework for Polyp Segmentation"
(Trinh, Nguyen, Vo Thi; ICME 2024, arXiv 2312.08555).

Modules, one concept each:

- :mod:`kdas_lite.models`   Polyp-PVT teacher/student (CIM, CFM, SAM) over timm encoders
- :mod:`kdas_lite.losses`   ``structure_loss``, ``attention_kd_loss``, ``sgm_loss``, ``KDASLoss``
- :mod:`kdas_lite.data`     PraNet-layout datasets, augmentation, synthetic polyps, downloads
- :mod:`kdas_lite.metrics`  the standard polyp evaluation protocol (``evaluate_maps``)
- :mod:`kdas_lite.evaluate` models on the test sets: paper-style tables, subset labels
- :mod:`kdas_lite.train`    teacher training and KDAS distillation loops (CUDA + AMP, or CPU)
- :mod:`kdas_lite.predict`  masks and labelled overlays for a folder of frames (research use)
- :mod:`kdas_lite.viz`      figures and the interactive teacher/student attention explorer
- :mod:`kdas_lite.colab`    the notebooks' setup: device report, Google Drive, parameter sets
- :mod:`kdas_lite.facts`    what a course run's pages state about each checkpoint, in one file
- :mod:`kdas_lite.cli`      the ``kdas-lite`` command
"""

__version__ = "0.1.0"
