"""nanogpt/config.py and cli.py: presets, precedence, the config file, the checks, and the command line's rules
(no prefix matching, "did you mean", finite floats)."""
import json
from pathlib import Path

import pytest

import config
import train
from cli import UserError
from config import PRESETS, TrainConfig, check_config, resolve_config
from helpers import call_main
from train import make_plan


def cfg_of(argv):
    return resolve_config(argv)[0]


def test_precedence_defaults_preset_file_flags(tmp_path):
    cfg, ckpt = resolve_config([])
    assert ckpt is None and cfg == TrainConfig(**PRESETS["demo"])  # no arguments: the offline demo preset
    assert cfg.dataset == "python_stdlib" and cfg.device == "auto" and cfg.max_iters > 0
    cfg = cfg_of(["--preset", "shakespeare_char"])
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size) == (6, 6, 384, 256)
    assert cfg.dataset == "shakespeare_char" and cfg.beta1 == 0.9  # untouched fields keep the defaults
    gpt2 = cfg_of(["--preset", "gpt2"])
    assert (gpt2.n_layer, gpt2.n_embd, gpt2.block_size, gpt2.beta2, gpt2.eps, gpt2.weight_decay) == (
        12, 768, 1024, 0.95, 1e-8, 0.1)
    assert cfg_of(["--preset", "finetune_shakespeare"]).init_from == "gpt2"
    toml = tmp_path / "c.toml"
    toml.write_text('preset = "shakespeare_char"\nn-layer = 3\nlearning_rate = 2\ncompile = false\n')
    cfg = cfg_of(["--config", str(toml)])
    assert (cfg.n_layer, cfg.n_head, cfg.learning_rate, cfg.compile) == (3, 6, 2.0, False)  # file over preset
    cfg = cfg_of(["--config", str(toml), "--n-layer", "5", "--compile"])
    assert (cfg.n_layer, cfg.compile) == (5, True)  # flags over file
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"n_head": 8, "bias": False}))
    cfg = cfg_of(["--config", str(js), "--no-bias", "--seed", "7"])
    assert (cfg.n_head, cfg.bias, cfg.seed) == (8, False, 7)


def test_presets_end_on_their_step_budget():
    """Presets with a decay length stop at max_iters == lr_decay_iters, not earlier at max_epochs: gpt2's 600k
    steps are ~33 epochs of OpenWebText (9.04B train tokens, as nanoGPT's prepare.py reports)."""
    train_tokens = {"shakespeare_char": 1_003_854, "openwebtext": 9_035_582_198}
    for name, preset in PRESETS.items():
        if "lr_decay_iters" not in preset:
            continue
        cfg = cfg_of(["--preset", name])
        plan = make_plan(cfg, check_config(cfg, 1), 1, train_tokens[cfg.dataset], 10**6)  # what train.py runs
        assert plan.total_iters == cfg.max_iters == plan.decay_iters == cfg.lr_decay_iters, name


def test_help_lists_every_field(run_script):
    r = run_script("nanogpt/train.py", "--help", timeout=60)
    assert r.returncode == 0
    for f in TrainConfig.__dataclass_fields__:
        assert "--" + f.replace("_", "-") in r.stdout, f


def test_grad_accumulation_from_batch_tokens():
    cfg = TrainConfig(batch_size=12, block_size=1024, batch_tokens=491_520)
    assert check_config(cfg, 1) == 40 and check_config(cfg, 8) == 5
    with pytest.raises(UserError, match="--batch-tokens 491520: must be a multiple of --batch-size"):
        check_config(cfg, 3)


@pytest.mark.parametrize("argv, needles", [
    (["--lr", "5"], ["unknown option --lr", "did you mean --learning-rate?"]),  # not --lr-decay-iters 5
    (["--lr", "1e-3"], ["unknown option --lr", "--learning-rate"]),
    (["--max-iter", "3"], ["unknown option --max-iter", "did you mean --max-iters?"]),
    (["--learning-rate", "nan"], ["--learning-rate", "finite", "nan"]),
    (["--grad-clip", "nan"], ["--grad-clip", "finite"]),
    (["--grad-clip", "-1"], ["--grad-clip -1.0: must be in [0, inf]"]),
    (["--seed", str(2**64 - 1)], [f"--seed {2**64 - 1}: must be in [0, 4294967295]"]),
    (["--seed", "-1"], ["--seed -1: must be in [0, 4294967295]"]),
    (["--seed", "1e20"], ["--seed 100000000000000000000: must be in [0, 4294967295]"]),  # 1e20 is a whole number
    (["--block-size", "64.5"], ["--block-size", "expected a whole number", "64.5"]),
    (["--block-size", "x"], ["--block-size", "invalid int value", "'x'"]),
    (["--eps", "nan"], ["--eps", "finite"]),
    (["--eps", "-1e-8"], ["--eps -1e-08: must be in [0, inf]"]),
    (["--learning-rate", "-0.1"], ["--learning-rate -0.1: must be in [0, inf]"]),
    (["--min-lr-ratio", "2"], ["--min-lr-ratio 2.0: must be in [0, 1]"]),
    (["--num-samples", "5000"], ["--num-samples 5000: must be in [0, 1000]"]),
    (["--eval-iters", "0"], ["--eval-iters 0: must be in [1, inf]"]),
    (["--beta1", "1.5"], ["--beta1 1.5: must be in [0, 1)"]),
    (["--beta2", "inf"], ["--beta2", "finite"]),
    (["--weight-decay", "-inf"], ["--weight-decay", "finite", "-inf"]),  # a value, not an unknown flag
])
def test_flags_are_exact_finite_and_in_range(capsys, clean_error, argv, needles):
    """Prefix matching is off: `--lr 5` was silently `--lr-decay-iters 5`. Every mistake is one line, exit 2."""
    clean_error(call_main(train.main, capsys, *argv, "--device", "cpu", "--data-dir", "/nonexistent"), *needles)


def test_config_file_refuses_unknown_and_mistyped_settings(tmp_path, capsys, clean_error):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("n_layers = 3\n")
    clean_error(call_main(train.main, capsys, "--config", cfg), "n_layers", "unknown setting")
    cfg.write_text('n_layer = "three"\n')
    clean_error(call_main(train.main, capsys, "--config", cfg), "n_layer must be int")
    cfg.write_text("learning_rate = nan\n")
    clean_error(call_main(train.main, capsys, "--config", cfg), "learning_rate must be a finite number")


def test_save_epochs_parsing():
    assert config.parse_save_epochs("1,5") == {1, 5}
    assert config.parse_save_epochs("all") is None and config.parse_save_epochs("") == set()
    with pytest.raises(UserError, match="--save-epochs '1,x'"):
        config.parse_save_epochs("1,x")


def test_ctrl_c_that_reaches_run_main_is_one_line_exit_130(capsys):
    """The fallback for every script: a KeyboardInterrupt that main did not handle becomes `PROG: interrupted`."""
    import sys

    import cli

    def interrupted_main():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as e:
        cli.run_main(interrupted_main)
    err = capsys.readouterr().err
    assert e.value.code == 130 and err == f"{Path(sys.argv[0]).name}: interrupted\n"


def test_help_states_each_default_once():
    """--help appends '(default: X)' to every knob's help: a help text that says its own default too reads
    '(default: on with CUDA ...) (default: None)'. A None default is explained as '(none: ...)'."""
    import bench
    import cli
    import prepare
    import recipe
    import sample

    for cls in (TrainConfig, sample.SampleConfig, bench.BenchConfig, recipe.RecipeConfig, prepare.PrepareConfig):
        for action in cli.build_parser(cls, "x", "")._actions:
            assert (action.help or "").count("default") <= 1, (cls.__name__, action.dest, action.help)
    # --resume continues a run; --init-from no longer lists nanoGPT's `resume` beside it
    init_from = config.TrainConfig.__dataclass_fields__["init_from"].metadata["help"]
    assert "resume |" not in init_from and "| resume" not in init_from and "--resume" in init_from


def test_each_preset_writes_under_nanogpt_out_preset(tmp_path):
    """issue 29: a preset's default output folder is nanogpt/out/PRESET (the demo's too), --help says so, and
    --out-dir, typed or in a --config file, wins."""
    here = Path(config.__file__).resolve().parent
    for name in PRESETS:
        assert cfg_of(["--preset", name]).out_dir == str(here / "out" / name), name
    assert cfg_of([]).out_dir == str(here / "out" / "demo") == TrainConfig().out_dir
    assert cfg_of(["--preset", "gpt2", "--out-dir", str(tmp_path)]).out_dir == str(tmp_path)
    toml = tmp_path / "c.toml"
    toml.write_text(f'preset = "gpt2"\nout_dir = "{tmp_path / "x"}"\n')
    assert cfg_of(["--config", str(toml)]).out_dir == str(tmp_path / "x")
    assert "(--preset P: nanogpt/out/P)" in TrainConfig.__dataclass_fields__["out_dir"].metadata["help"]


def test_the_cpu_fine_tune_preset_is_sized_for_a_cpu():
    """issue 29: finetune_shakespeare_cpu fine-tunes GPT-2 124M (its shape, from the weights) on the same data as the
    GPU preset, on the CPU, with a small context, at most 1,024 tokens a step and 100 steps: under 5% of the GPU
    preset's training tokens, and evaluations of a few batches."""
    cpu, gpu = cfg_of(["--preset", "finetune_shakespeare_cpu"]), cfg_of(["--preset", "finetune_shakespeare"])
    assert (cpu.init_from, cpu.dataset, cpu.device, cpu.compile) == ("gpt2", gpu.dataset, "cpu", False)
    assert (cpu.n_layer, cpu.n_head, cpu.n_embd) == (12, 12, 768)
    per_step = cpu.batch_size * cpu.block_size * check_config(cpu, 1)
    assert per_step <= 1024 and cpu.block_size <= 256 and 0 < cpu.max_iters <= 100, (per_step, cpu.max_iters)
    assert per_step * cpu.max_iters < 0.05 * gpu.batch_tokens * gpu.max_iters
    assert cpu.eval_iters * cpu.batch_size <= 32 and cpu.final_eval_tokens <= 32_768
