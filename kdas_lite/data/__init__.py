"""Polyp datasets: files on disk → tensors, plus synthetic data and safe downloads.

Read the submodules in this order:

1. :mod:`~kdas_lite.data.registry`   which datasets exist, the PraNet folder layout
2. :mod:`~kdas_lite.data.io`         reading images and masks robustly, pairing files
3. :mod:`~kdas_lite.data.transforms` joint image/mask augmentation (albumentations)
4. :mod:`~kdas_lite.data.dataset`    ``PolypDataset`` / ``PolypTestDataset``, split, cache
   (:mod:`~kdas_lite.data.cache_files`: cache files named by content, checked, safely written)
5. :mod:`~kdas_lite.data.synthetic`  a SYNTHETIC look-alike dataset for CPU labs and tests
6. :mod:`~kdas_lite.data.download`   verified downloads and zip extraction that cannot escape
7. :mod:`~kdas_lite.data.pranet`     PraNet's full benchmark from Google Drive (gdown), counted
8. :mod:`~kdas_lite.data.prepare`    raw Kvasir-SEG → PraNet split; where a course's data comes from

Typical use::

    from kdas_lite.data import (PolypDataset, PolypTestDataset, find_layout, pair_files,
                                image_mask_dirs, train_val_split)

    layout = find_layout("data")                      # PraNet layout or raw Kvasir-SEG
    train, val = train_val_split(pair_files(*image_mask_dirs(layout.train)))
    train_set = PolypDataset(train, size=352, augment=True, cache="memory")
    test_sets = {name: PolypTestDataset(path) for name, path in layout.test.items()}
"""

from kdas_lite.data.dataset import (
    CacheMode,
    PolypDataset,
    PolypTestDataset,
    collate_test,
    default_cache_dir,
    load_split,
    split_pairs,
    subsample,
    train_val_split,
)
from kdas_lite.data.download import download_dataset, download_file, safe_extract
from kdas_lite.data.io import (
    IMAGE_EXTENSIONS,
    DataWarning,
    list_folder,
    pair_files,
    read_image,
    read_mask,
    read_pair,
)
from kdas_lite.data.pranet import PRANET_DRIVE_FILES, fetch_pranet
from kdas_lite.data.prepare import course_data, prepare_kvasir_split
from kdas_lite.data.registry import (
    DATASETS,
    TEST_SETS,
    TRAIN_SET,
    DataLayout,
    DatasetInfo,
    SetStatus,
    find_layout,
    find_shared_data,
    find_test_sets,
    image_mask_dirs,
    is_dataset_folder,
    leaked_test_images,
    pranet_kvasir_test_names,
    read_manifest,
    resolve_data_root,
    set_status,
    training_source,
)
from kdas_lite.data.synthetic import (
    STYLES,
    SyntheticStyle,
    is_synthetic,
    make_synthetic_dataset,
    render_polyp_image,
)
from kdas_lite.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SharedRandomCompose,
    build_eval_transform,
    build_resize,
    build_train_transform,
)

__all__ = [
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "PRANET_DRIVE_FILES",
    "STYLES",
    "TEST_SETS",
    "TRAIN_SET",
    "CacheMode",
    "DataLayout",
    "DataWarning",
    "DatasetInfo",
    "PolypDataset",
    "PolypTestDataset",
    "SetStatus",
    "SharedRandomCompose",
    "SyntheticStyle",
    "build_eval_transform",
    "build_resize",
    "build_train_transform",
    "collate_test",
    "course_data",
    "default_cache_dir",
    "download_dataset",
    "download_file",
    "fetch_pranet",
    "find_layout",
    "find_shared_data",
    "find_test_sets",
    "image_mask_dirs",
    "is_dataset_folder",
    "is_synthetic",
    "leaked_test_images",
    "list_folder",
    "load_split",
    "make_synthetic_dataset",
    "pair_files",
    "pranet_kvasir_test_names",
    "prepare_kvasir_split",
    "read_image",
    "read_manifest",
    "read_mask",
    "read_pair",
    "render_polyp_image",
    "resolve_data_root",
    "safe_extract",
    "set_status",
    "split_pairs",
    "subsample",
    "train_val_split",
    "training_source",
]
