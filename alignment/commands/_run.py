"""The shared body of the config-driven trainer commands (``ddpo``, ``reward-grad``, ``dpo``, ``flow-grpo``)."""

from __future__ import annotations

import json
from typing import Callable, Sequence


def run_trainer_command(argv: list[str], command: str, config_cls: type, load_trainer: Callable[[], type],
                        summary_keys: Sequence[str]) -> int:
    """``--help`` → the config's documented keys; else parse the config, train, and print (main process
    only) one JSON line: ``summary_keys`` of the final metrics plus every ``eval_*_mean``.

    ``load_trainer`` returns the trainer class; it is imported only when training, so ``--help`` stays fast.
    Library chatter goes to ``output_dir/artquant.log`` (under the ``artquant`` dispatcher's quiet console).
    """
    from artquant_core.cli_args import wants_help
    from artquant_core.config import config_help, parse_config
    from artquant_core.console import log_to_folder

    if wants_help(argv):
        print(config_help(config_cls, command))
        return 0
    from alignment.pipeline import import_model_libraries

    import_model_libraries()  # first: the config parser imports transformers
    config = parse_config(config_cls, argv)
    log_to_folder(config.output_dir)
    trainer = load_trainer()(config)
    metrics = trainer.train()
    if trainer.accelerator.is_main_process:
        print(json.dumps({k: metrics[k] for k in summary_keys if k in metrics} |
                         {k: v for k, v in metrics.items() if k.startswith("eval_") and k.endswith("_mean")}))
    return 0
