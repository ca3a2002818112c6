"""Every architecture of tests/test_models.py under a distribution strategy, in one launch.

    torchrun --nproc_per_node 2 tests/strategy_sweep.py ddp|fsdp MODELS_ROOT RESULT_JSON [model_type,...]

For each model type (default: all of test_models.ARCHS): the loop's own model building
(models.build_model), the loop's strategy choices (Loop.configure_ddp / configure_fsdp, on a
Loop whose accelerator is the shared one), accelerate's prepare(), three optimizer steps on
different batches per rank and a gathered state dict. One launch for all of them keeps this
to seconds per architecture; a real CLI run per architecture would take minutes.

Rank 0 writes {model_type: "ok" | "refused: <UserError>" | "FAIL <error>"}. A failure on one
rank only would desynchronise the rest, so every rank takes the step's verdict from rank 0's
view through an all-reduce of "did anyone fail".
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(1, HERE)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import test_models as TM  # noqa: E402
from fault_train import FSDPOnCPU  # noqa: E402
from loop import Loop, models, parse_args  # noqa: E402
from loop.errors import UserError, short  # noqa: E402
from loop.logs import RunLog  # noqa: E402


def main():
    strategy, root, result_file = sys.argv[1:4]
    names = sys.argv[4].split(",") if len(sys.argv) > 4 else list(TM.ARCHS)
    cls = FSDPOnCPU if strategy == "fsdp" else Loop
    texts = TM.BATCH_TEXTS * 2
    results, accelerator = {}, None
    for name in names:
        error = None
        try:
            if accelerator is None or accelerator.is_main_process:
                TM.build_model_dir(root, name)
            if accelerator is not None:
                accelerator.wait_for_everyone()
            cfg = parse_args(["--model_name_or_path", os.path.join(root, name), "--label_names", "NEGATIVE,POSITIVE",
                              "--output_dir", os.path.join(root, "_out")])
            lp = cls(cfg)
            lp.accelerator = accelerator = accelerator or lp.build_accelerator()
            lp.runlog = RunLog(cfg, accelerator)  # lp.print: the "DDP: find_unused_parameters on" line
            model_config = models.load_config(cfg)
            lp.tokenizer = tok = models.load_tokenizer(cfg, model_config)
            model = models.build_model(cfg, model_config, ["NEGATIVE", "POSITIVE"], tokenizer=tok)
            lp.configure_ddp(model)
            if strategy == "fsdp":  # a fresh plugin per model: configure_fsdp writes its wrap choice into it
                accelerator.state.fsdp_plugin = FSDPOnCPU.fsdp_plugin()
            lp.configure_fsdp(model)
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
            model, optimizer = accelerator.prepare(model, optimizer)
            for step in range(3):
                start = (step * 4 + accelerator.process_index * 2) % (len(texts) - 3)
                batch = tok(texts[start:start + 3], padding=True, return_tensors="pt").to(accelerator.device)
                batch["labels"] = torch.tensor([0, 1, 0], device=accelerator.device)
                accelerator.backward(model(**batch).loss)
                optimizer.step()
                optimizer.zero_grad()
            state = accelerator.get_state_dict(model)
            if accelerator.is_main_process and not state:
                raise RuntimeError("empty gathered state dict")
        except UserError as e:
            error = f"refused: {short(e)}"
        except Exception as e:  # noqa: BLE001 (recorded per architecture)
            error = f"FAIL {type(e).__name__}: {short(e)}"
        if accelerator is None:
            raise SystemExit(f"{name}: {error}")
        failed = torch.tensor([1 if error else 0])
        dist.all_reduce(failed)
        results[name] = error or ("FAIL on another rank" if failed.item() else "ok")
        accelerator._models.clear()
        accelerator._optimizers.clear()
        accelerator.ddp_handler = None
    if accelerator.is_main_process:
        with open(result_file, "w") as f:
            json.dump(results, f, indent=1)
    accelerator.wait_for_everyone()
    # Out at once, every rank past the barrier: gloo's threads could abort a normal exit ("terminate called ..."),
    # and destroy_process_group once hung a rank for the test's whole timeout (results written, under load).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
