"""Accuracy on real data: fine-tune one local model with our loop and with transformers.Trainer.

    python bench/accuracy.py --model /tmp/minilm --train_file ../shared/data/imdb/train.parquet \
        --test_file ../shared/data/imdb/test.parquet --max_train_samples 2000 --max_eval_samples 1000 \
        --max_length 128 --epochs 1 --lr 5e-5

Both runs use the same seeded subsets (a shuffle of each file, then the first N rows), the same
model, learning rate, batch size, epochs, max length, seed and precision. Ours runs with its
defaults otherwise (length-grouped batches, best/ saved); Trainer with the guide's recipe
(eval and save every epoch, load_best_model_at_end, DataCollatorWithPadding, accuracy).
Each runs in its own process; wall time counts data loading, tokenization, training and the
per-epoch evaluations (not the Python imports). Prints one JSON line on stdout.
"""

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="local pretrained model folder (with its tokenizer)")
    p.add_argument("--train_file", required=True, help="parquet/csv/json with text and label columns")
    p.add_argument("--test_file", required=True)
    p.add_argument("--max_train_samples", type=int, default=None, help="seeded subset (default: all)")
    p.add_argument("--max_eval_samples", type=int, default=None, help="seeded subset (default: all)")
    p.add_argument("--max_length", type=int, default=None, help="truncation (default: the model's limit, at most 512)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--bf16", action="store_true", help="bf16 mixed precision for both (GPU)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--skip_trainer", action="store_true", help="run only our loop")
    p.add_argument("--skip_ours", action="store_true", help="run only Trainer (its baseline, in a call of its own)")
    p.add_argument("--worker", choices=["ours", "trainer"], help=argparse.SUPPRESS)
    p.add_argument("--result_file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.skip_ours and args.skip_trainer:
        p.error("--skip_ours and --skip_trainer leave nothing to run")
    return args


def main(argv=None):
    given = list(argv if argv is not None else sys.argv[1:])
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    tmp = common.make_tmp("bench_accuracy_")
    try:
        train, test = args.train_file, args.test_file
        if args.max_train_samples:
            train = common.write_subset(train, os.path.join(tmp, "train.parquet"), args.max_train_samples, args.seed)
        if args.max_eval_samples:
            test = common.write_subset(test, os.path.join(tmp, "test.parquet"), args.max_eval_samples, args.seed)
        argv = list(argv if argv is not None else sys.argv[1:])
        argv += ["--train_file", train, "--test_file", test]  # later flags win: the workers get the subsets
        roles = ([] if args.skip_ours else ["ours"]) + ([] if args.skip_trainer else ["trainer"])
        results = common.run_workers(os.path.abspath(__file__), argv, roles, tmp, args.bf16)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    first = next(iter(results.values()))
    out = {"benchmark": "accuracy", **common.versions(), "command": common.command_line("accuracy.py", given),
           "model": os.path.basename(os.path.normpath(args.model)),
           "train_file": args.train_file, "test_file": args.test_file,
           "train_samples": first["train_samples"], "eval_samples": first["eval_samples"],
           "max_length": first["max_length"], "epochs": args.epochs, "lr": args.lr,
           "batch_size": args.batch_size, "precision": "bf16" if args.bf16 else "fp32", "seed": args.seed, **results}
    print(json.dumps(out), flush=True)


# ---------------------------------------------------------------- workers
def run_ours(args, out_dir):
    from loop import Callback, Loop, TrainConfig

    class Record(Callback):
        def __init__(self):
            self.accuracy = []

        def on_evaluate(self, loop, metrics):
            self.accuracy.append(metrics["eval_accuracy"])

    record = Record()
    cfg = TrainConfig(model_name_or_path=args.model, train_file=args.train_file, validation_file=args.test_file,
                      max_length=args.max_length, num_train_epochs=args.epochs, learning_rate=args.lr,
                      per_device_train_batch_size=args.batch_size, seed=args.seed, output_dir=out_dir)
    start = time.perf_counter()
    loop = Loop(cfg, callbacks=[record])
    loop.fit()
    wall = time.perf_counter() - start
    return {"accuracy_per_epoch": record.accuracy, "wall_s": wall, "train_samples": len(loop.data.train),
            "eval_samples": len(loop.data.eval), "max_length": loop.max_length}


def run_trainer(args, out_dir):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, set_seed

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    config = AutoConfig.from_pretrained(args.model)
    max_length = min(args.max_length or 512, config.max_position_embeddings, tokenizer.model_max_length)
    cache = os.environ.get("HF_DATASETS_CACHE")
    train = common.tokenize_for_trainer(args.train_file, tokenizer, max_length, cache)
    test = common.tokenize_for_trainer(args.test_file, tokenizer, max_length, cache)
    names = train.features["label"].names if hasattr(train.features["label"], "names") else ["LABEL_0", "LABEL_1"]
    set_seed(args.seed)
    # fp32 master weights (the checkpoint may be stored in fp16), as our loop does.
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)}, dtype=torch.float32)
    trainer = common.guide_trainer(model, tokenizer, train, test, out_dir, lr=args.lr, batch_size=args.batch_size,
                                   epochs=args.epochs, bf16=args.bf16, seed=args.seed, per_epoch_eval=True)
    trainer.train()
    wall = time.perf_counter() - start
    accuracy = [r["eval_accuracy"] for r in trainer.state.log_history if "eval_accuracy" in r]
    return {"accuracy_per_epoch": accuracy, "wall_s": wall, "train_samples": len(train), "eval_samples": len(test),
            "max_length": max_length}


def worker(args):
    common.start_worker()
    out_dir = os.path.join(os.path.dirname(args.result_file), f"{args.worker}_out")
    result = (run_ours if args.worker == "ours" else run_trainer)(args, out_dir)
    common.finish_worker(args.result_file, result)


if __name__ == "__main__":
    main()
