"""tools/stale_numbers.py: a number the prose quotes from an old run's outputs is flagged when the
new outputs no longer show it; rounded quotes, unchanged numbers and constants are not."""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))
import stale_numbers  # noqa: E402


def notebook(prose, output):
    return {'cells': [{'cell_type': 'markdown', 'metadata': {}, 'source': [prose]},
                      {'cell_type': 'code', 'metadata': {}, 'execution_count': 1, 'source': [],
                       'outputs': [{'output_type': 'stream', 'name': 'stdout',
                                    'text': [output]}]}],
            'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}


def test_a_number_the_rerun_changed_is_flagged_and_a_rounded_or_kept_one_is_not():
    prose = '准确率 0.853，损失 0.42，慢 4.7 倍，共 1175 次更新，动量 0.9'
    old = notebook(prose, 'test acc 0.853, loss 0.4213, ratio 4.7x, 1175 updates')
    new = notebook(prose, 'test acc 0.861, loss 0.4188, ratio 4.7x, 1175 updates')
    assert stale_numbers.stale_numbers(new, old) == [(0, '0.853')]   # 0.42 rounds 0.4188


def test_the_command_exits_1_with_the_stale_numbers_and_0_when_the_prose_follows(tmp_path, capsys):
    old = tmp_path / 'old.ipynb'
    new = tmp_path / 'new.ipynb'
    old.write_text(json.dumps(notebook('loss 2.30 then 1.97', 'loss 2.3012 1.9701')))
    new.write_text(json.dumps(notebook('loss 2.30 then 1.97', 'loss 2.3012 1.9644')))
    assert stale_numbers.main([str(new), '--old', str(old)]) == 1
    assert capsys.readouterr().out == 'cell 0: 1.97\n'
    new.write_text(json.dumps(notebook('loss 2.30 then 1.96', 'loss 2.3012 1.9644')))
    assert stale_numbers.main([str(new), '--old', str(old)]) == 0


def test_on_a_real_notebook_a_quoted_output_number_changed_by_a_rerun_is_found():
    # notebook 3's prose quotes its outputs; simulate a re-run that changes one of those numbers
    path = ROOT / 'notebooks' / '3_lenet_batch_norm.ipynb'
    old = json.loads(path.read_text(encoding='utf-8'))
    quoted = sorted(n for c in old['cells'] if c['cell_type'] == 'markdown'
                    for n in stale_numbers.numbers(''.join(c['source']))
                    if '.' in n and n in stale_numbers.output_text(old))
    assert quoted, 'notebook 3 quotes no number of its outputs'
    number = quoted[-1]
    # appending a 9 changes the value beyond rounding (0.845 -> 0.8459, which rounds to 0.846)
    new = json.loads(json.dumps(old).replace(number, number + '9'))
    for cell in new['cells']:   # the re-run changed the outputs; the prose keeps the old number
        if cell['cell_type'] == 'markdown':
            cell['source'] = [line.replace(number + '9', number) for line in cell['source']]
    assert number in [n for _, n in stale_numbers.stale_numbers(new, old)]


# --- numbers quoted from other sources, and bounds (issue 25)

def write(path, prose, output):
    path.write_text(json.dumps(notebook(prose, output)), encoding='utf-8')
    return json.loads(path.read_text(encoding='utf-8'))


def test_a_bound_no_output_shows_is_flagged_in_plain_scientific_and_latex_form(tmp_path):
    output = 'dX  1.4e-16  1.1e-10  1.1e-10'
    stale = notebook('相对误差都不超过 $1.4 \\times 10^{-10}$，也不超过 1.4e-10。', output)
    assert stale_numbers.unsupported_claims(stale, tmp_path, None) == [
        (0, '1.4 \\times 10^{-10}', 'a bound no output shows'),
        (0, '1.4e-10', 'a bound no output shows')]
    kept = notebook('都不超过 $1.1 \\times 10^{-10}$，与数值梯度一致到 1.1e-10 以内。', output)
    assert stale_numbers.unsupported_claims(kept, tmp_path, None) == []


def test_a_number_quoted_from_another_notebook_or_results_md_must_be_shown_there(tmp_path):
    write(tmp_path / '3_lenet.ipynb', 'x', 'recalibrated 0.845, no BN 0.427')
    results = tmp_path / 'RESULTS.md'
    results.write_text('| scratch | 61.2 s | 3.52x |\n', encoding='utf-8')
    prose = ('notebook 3 的重新估计后准确率是 0.845，不带批量归一化的是 0.431。'
             '`benchmarks/RESULTS.md` 测得 3.52 倍，又说 3.61 倍。本 notebook 的 0.712 不受影响。')
    nb = notebook(prose, 'here 0.712')
    assert stale_numbers.unsupported_claims(nb, tmp_path, results) == [
        (0, '0.431', 'not shown by notebook 3'), (0, '3.61', 'not shown by RESULTS.md')]


def test_the_sources_command_exits_1_on_an_unsupported_claim(tmp_path, capsys):
    path = tmp_path / '5_x.ipynb'
    path.write_text(json.dumps(notebook('误差不超过 2e-7。', 'max error 3.0e-07')),
                    encoding='utf-8')
    assert stale_numbers.main([str(path), '--sources']) == 1
    assert capsys.readouterr().out == 'cell 0: 2e-7 (a bound no output shows)\n'
    path.write_text(json.dumps(notebook('误差不超过 3e-7。', 'max error 3.0e-07')),
                    encoding='utf-8')
    assert stale_numbers.main([str(path), '--sources']) == 0
