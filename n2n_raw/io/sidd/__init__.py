"""SIDD raw-RGB files: v7.3 frames, v5 metadata and CFA, block files, block positions, submissions.

This is the one place that decodes SIDD's file formats (see the project's SIDD notes for the facts used).
Everything returned here is in MATLAB orientation: a mosaic ``m`` of shape (H, W) has ``m[0, 0]`` at the
top-left pixel of the sensor as MATLAB shows it, and a CFA string such as ``"GRBG"`` names the colours of
the 2×2 cell row by row: (0,0)=G, (0,1)=R, (1,0)=B, (1,1)=G.

File kinds:

- frames ``NNNN_{NOISY,GT}_RAW_0XX.MAT``: MATLAB v7.3 = HDF5 behind a 512-byte user block, one variable
  ``x`` (float32, normalised raw in [0, 1]). MATLAB stores column-major, so h5py sees ``x`` as (W, H); it is
  transposed back here, once.
- metadata ``NNNN_METADATA_RAW_0XX.MAT``: MATLAB v5, a struct ``metadata`` = MATLAB's ``imfinfo`` of the DNG.
  The CFA is the TIFF/EP CFAPattern tag 33422 in ``UnknownTags`` (else in ``SubIFDs{1}.UnknownTags``, else
  from the phone).
- block files (``ValidationNoisyBlocksRaw.mat`` …): MATLAB v5, float32 (N, B, h, w) named like the file.
- ``BenchmarkBlocks32.mat``: (32, 4) [row, col, h, w], 1-based.
- submissions: ``SubmitRaw.mat`` (cell + time + struct) and the Kaggle ``SubmitRaw.csv`` (``ID,BLOCK``).

Modules: :mod:`.names` (phones, CFAs, scene names, the 40-scene table), :mod:`._mat` (shared MATLAB
v5 / v7.3 helpers), :mod:`.frames`, :mod:`.metadata`, :mod:`.blocks`, :mod:`.submission`, and
:mod:`.synth_writers` (writers of SIDD's input files, for the synthetic world and the tests). The job
``prepare sidd`` lives in :mod:`n2n_raw.jobs.prepare`.

Every problem with a user's file raises :class:`~n2n_raw.errors.InputError` whose one-line message starts
with the file's path. All writers are atomic and refuse an existing file unless ``force``.
"""
from __future__ import annotations

from n2n_raw.io.sidd.blocks import (
                     POSITIONS_FILE,
                     check_block_positions,
                     positions_beside,
                     read_block_positions,
                     read_blocks,
                     read_checked_blocks,
)
from n2n_raw.io.sidd.frames import FrameSet, find_frames, frame_set, read_frame
from n2n_raw.io.sidd.metadata import SiddMeta, cfa_from_codes, frame_cfa, read_metadata
from n2n_raw.io.sidd.names import (
                     BLOCK_SCENES,
                     BLOCK_VARIABLES,
                     CFAS,
                     MAKE_TO_PHONE,
                     PHONE_CFA,
                     block_cfas,
                     check_cfa,
                     parse_scene_name,
                     phone_from_make,
)
from n2n_raw.io.sidd.submission import (
                     OPTIONAL_FIELDS,
                     read_submission,
                     verify_submission,
                     write_submission_csv,
                     write_submission_mat,
)
from n2n_raw.io.sidd.synth_writers import (
                     matlab73_header,
                     write_block_positions,
                     write_blocks,
                     write_frame,
                     write_metadata,
)

__all__ = [
    # names
    "CFAS", "check_cfa", "PHONE_CFA", "MAKE_TO_PHONE", "BLOCK_SCENES", "BLOCK_VARIABLES",
    "phone_from_make", "parse_scene_name", "block_cfas",
    # frames
    "read_frame", "FrameSet", "find_frames", "frame_set",
    # metadata
    "SiddMeta", "cfa_from_codes", "read_metadata", "frame_cfa",
    # blocks
    "read_blocks", "read_block_positions", "POSITIONS_FILE", "positions_beside", "check_block_positions",
    "read_checked_blocks",
    # submissions
    "OPTIONAL_FIELDS", "write_submission_mat", "write_submission_csv", "read_submission", "verify_submission",
    # writers of SIDD's input files (synthetic world, tests)
    "matlab73_header", "write_frame", "write_metadata", "write_blocks", "write_block_positions",
]
