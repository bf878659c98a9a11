import os
import subprocess
import sys
import textwrap

import torch
from transformers import BertConfig, BertModel

from hf_genomics import publish_to_local_cache


def test_published_model_loads_offline_in_a_fresh_process(tmp_path):
    model = BertModel(BertConfig(vocab_size=10, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32)).eval()
    model.save_pretrained(tmp_path / "saved")
    home = tmp_path / "hf_home"
    snapshot = publish_to_local_cache(tmp_path / "saved", "hf-genomics/tiny-test", cache_dir=home / "hub")
    assert (snapshot / "config.json").is_symlink()
    ids = torch.tensor([[1, 2, 3, 4]])
    expected = model(ids).last_hidden_state
    torch.save(ids, tmp_path / "ids.pt")
    code = textwrap.dedent(f"""
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained("hf-genomics/tiny-test")
        torch.save(model(torch.load({str(tmp_path / 'ids.pt')!r})).last_hidden_state, {str(tmp_path / 'out.pt')!r})
    """)
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected)


def test_republishing_replaces_the_snapshot(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text("{}")
    first = publish_to_local_cache(tmp_path / "a", "org/x", cache_dir=tmp_path / "hub")
    (tmp_path / "a" / "config.json").write_text('{"v": 2}')
    second = publish_to_local_cache(tmp_path / "a", "org/x", cache_dir=tmp_path / "hub")
    assert first != second
    assert (tmp_path / "hub" / "models--org--x" / "refs" / "main").read_text() == second.name
    assert (second / "config.json").read_text() == '{"v": 2}'


def test_bad_inputs_raise(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError):
        publish_to_local_cache(tmp_path / "missing", "org/x", cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        publish_to_local_cache(tmp_path / "empty", "org/x", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="namespace/name"):
        publish_to_local_cache(tmp_path / "empty", "noslash", cache_dir=tmp_path)
