"""Evaluation on public benchmarks; no product module imports this package.

Modules, one concept each:

* :mod:`.davis_data`  - DAVIS folder layout: sequences, frame folders, annotations;
* :mod:`.davis_eval`  - DAVIS J&F evaluation of a sequence / a list (process pool);
* :mod:`.badja_data`  - BADJA joint annotations and their pixel conventions;
* :mod:`.badja_eval`  - BADJA PCK scoring and evaluation (tracker and static floor);
* :mod:`.results`     - the one ``results.json`` writer, means and tables;
* :mod:`.interactive` - a robot user correcting the worst frame each round (J&F per round).
"""
from .badja_data import (
    ALPHAS,
    NATIVE_HW,
    BadjaSequence,
    first_frames,
    list_badja_sequences,
    load_badja,
    resolve_badja_sequences,
    to_frame_pixels,
    to_native_pixels,
)
from .badja_eval import (
    evaluate_badja,
    evaluate_badja_sequence,
    run_eval_badja,
    score_badja,
    write_badja_tracks_csv,
)
from .davis_data import (
    annotation_folder,
    check_root,
    find_sequence_root,
    frame_folder,
    list_sequences,
    load_annotations,
    load_sequence_prefix,
    read_frame_annotation,
    resolve_sequences,
    split_roots,
)
from .davis_eval import BASELINES, evaluate_davis, evaluate_davis_sequence
from .interactive import (
    PICKS,
    Robot,
    evaluate_interactive,
    evaluate_interactive_sequence,
    format_rounds_table,
    robots_from,
    run_robots,
    summarise_rounds,
)
from .results import format_badja_table, summarise_badja, write_results

__all__ = [
    "ALPHAS", "NATIVE_HW", "BadjaSequence", "first_frames", "list_badja_sequences",
    "load_badja", "resolve_badja_sequences", "to_frame_pixels", "to_native_pixels",
    "evaluate_badja", "evaluate_badja_sequence", "run_eval_badja", "score_badja",
    "write_badja_tracks_csv",
    "annotation_folder", "check_root", "find_sequence_root", "frame_folder", "list_sequences",
    "load_annotations", "load_sequence_prefix", "read_frame_annotation", "resolve_sequences",
    "split_roots",
    "BASELINES", "evaluate_davis", "evaluate_davis_sequence",
    "PICKS", "Robot", "evaluate_interactive", "evaluate_interactive_sequence",
    "format_rounds_table", "robots_from", "run_robots", "summarise_rounds",
    "format_badja_table", "summarise_badja", "write_results",
]
