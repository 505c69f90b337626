"""The LaTeX/PDF report: hostile model text never breaks compilation nor runs anything; the PDF has it all."""

from __future__ import annotations

import subprocess
from io import BytesIO
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure as MplFigure

from reports.latex import MARKER, render_latex, section_at_line, tex
from reports.models import SECTION_KEYS, SECTION_TITLES, Fact, Figure, Reference, Report, Section, Verdict
from reports.pdf import compile_pdf, parse_log

HOSTILE = [
    r"\input{/etc/passwd}",
    r"\immediate\write18{touch PWNED}\write18{touch PWNED}",
    r"\catcode`\%=11 \def\x{\x}\x",
    "unbalanced { braces } } {{ and $math and & tabs # _ ^ ~ % \\",
    "\\end{document} \\begin{verbatim} \\makeatletter \\csname @@end\\endcsname",
    "a" * 10_000,
    ("long line of words " * 600).strip(),
    "中文文本 العربية Русский Ελληνικά עברית हिन्दी 日本語 한국어 🎉 Ħ ŉ",
    "control\x00chars\x07and\x1b[31mescapes\u202e reversed",
]


def png(path: Path) -> None:
    fig = MplFigure(figsize=(3, 2))
    fig.add_subplot().plot([0, 1, 2], [0, 1, 4])
    buf = BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def report(bodies: dict[str, str] | None = None, **overrides) -> Report:
    bodies = bodies or {}
    sections = [Section(key=k, title=SECTION_TITLES[k], body=bodies.get(k, f"Prose of {k}, citing {{{{F1}}}}."))
                for k in SECTION_KEYS]
    sections[4] = sections[4].model_copy(update={"generated": "The figures: [Figure fig1] (timeseries); [Figure fig2]."})
    fields = dict(
        version=1, title="Segregation from mild preferences", sections=sections,
        facts=[Fact(id="F1", description="final share, m=1", value=0.4231, ci_low=0.4, ci_high=0.45, n=5,
                    source="final.parquet: share"),
               Fact(id="F2", description="clusters", value=12, source="final.parquet: clusters")],
        figures=[Figure(id="fig1", path="figures/a.png", caption="Share over time"),
                 Figure(id="fig2", path="figures/b.png", caption="Share against m")],
        verdicts=[Verdict(hypothesis_id="H1", statement="Share rises with m", verdict="supported", reason="{{F1}}")],
        references=[Reference(key="schelling1971", authors="Schelling, Thomas C.", title="Dynamic Models of Segregation",
                              year="1971", venue="Journal of Mathematical Sociology")],
    )
    return Report(**(fields | overrides))


def build(tmp_path: Path, r: Report) -> tuple[Path, object]:
    folder = tmp_path / "v1"
    for fig in r.figures:
        png(folder / "figures" / f"{fig.id}.png")
    (folder / "report.tex").write_text(render_latex(r, {f.id: f"figures/{f.id}.png" for f in r.figures}))
    return folder, compile_pdf(folder / "report.tex")


def pdf_text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def test_pdf_shows_title_every_section_the_figures_the_facts_table_and_references(tmp_path):
    folder, result = build(tmp_path, report())
    assert result.ok, result.errors
    text = pdf_text(folder / "report.pdf")
    assert "Segregation from mild preferences" in text
    for key in SECTION_KEYS:
        assert SECTION_TITLES[key].split()[0] in text
    assert "Figure 1: Share over time" in text and "Figure 2: Share against m" in text
    assert "Facts" in text and "final share, m=1" in text and "0.423 (95% CI 0.4 to 0.45, n = 5)" in text
    assert "Dynamic Models of Segregation" in text
    images = subprocess.run(["pdfimages", "-list", str(folder / "report.pdf")], capture_output=True, text=True).stdout
    assert [line.split()[2] for line in images.splitlines()[2:]].count("image") == 2


@pytest.mark.parametrize("hostile", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_model_text_compiles_and_runs_nothing(hostile, tmp_path):
    r = report({k: f"Before {hostile} after {{{{F1}}}}." for k in SECTION_KEYS}, title=hostile[:300])
    r.figures[0] = r.figures[0].model_copy(update={"caption": hostile})
    r.facts[1] = r.facts[1].model_copy(update={"description": hostile, "source": hostile})
    r.sections[2] = r.sections[2].model_copy(update={"generated": f"- **{hostile}** `{hostile}`\n\n| a | b |\n|---|---|\n| {hostile} | x |"})
    folder, result = build(tmp_path, r)
    assert result.ok, result.errors
    assert not (folder / "PWNED").exists() and not Path("PWNED").exists()
    text = pdf_text(folder / "report.pdf")
    assert "root:x:0" not in text
    assert "Before" in text and "after" in text


def test_non_latin_scripts_become_a_visible_marker_with_a_notice(tmp_path):
    assert MARKER in tex("中文") and tex("中文 and עברית") == f"{MARKER} and {MARKER}"
    assert tex("Gödel, Łódź, naïve, Ørsted") == "Gödel, Łódź, naïve, Ørsted"  # Latin letters stay
    assert tex("ﬁnal → x") == r"final {-}> x"  # compatibility forms and arrows are spelled out
    folder, result = build(tmp_path, report({"results": "日本語のテキスト and Ελληνικά {{F1}}."}))
    assert result.ok, result.errors
    text = pdf_text(folder / "report.pdf")
    assert "[?] and [?]" in text and "appear as [?]" in text


def test_every_latex_special_character_is_escaped():
    assert tex(r"\input{x}") == r"\textbackslash{}input\{x\}"
    assert tex("50% of $1 & #2 _a ^b ~c") == r"50\% of \$1 \& \#2 \_a \^{}b \textasciitilde{}c"
    assert "\n" not in tex("two\nlines") and r"\allowbreak" in tex("x" * 100)


def test_raw_tex_cannot_read_files_outside_its_folder(tmp_path):
    """Defence in depth: even LaTeX that escaped nothing is confined (kpathsea paranoid mode)."""
    (tmp_path / "report.tex").write_text("\\documentclass{article}\\begin{document}\\input{/etc/passwd}\\end{document}\n")
    result = compile_pdf(tmp_path / "report.tex")
    assert not result.ok and result.errors
    log = (tmp_path / "report.log").read_text()
    assert "root:x:0" not in log


def test_raw_tex_cannot_run_shell_commands(tmp_path):
    (tmp_path / "report.tex").write_text("\\documentclass{article}\\begin{document}"
                                         "\\immediate\\write18{touch PWNED}hello\\end{document}\n")
    compile_pdf(tmp_path / "report.tex")
    assert not (tmp_path / "PWNED").exists()


def test_a_looping_document_is_stopped_at_the_time_limit(tmp_path):
    (tmp_path / "report.tex").write_text("\\documentclass{article}\\begin{document}\\def\\x{\\x}\\x\\end{document}\n")
    result = compile_pdf(tmp_path / "report.tex", timeout=3)
    assert not result.ok and "longer than 3 s" in result.errors[0]
    assert not (tmp_path / "report.pdf").exists()


def test_a_looping_document_is_stopped_even_if_the_caller_dies(tmp_path):
    import signal
    import sys
    import time

    import psutil

    (tmp_path / "report.tex").write_text("\\documentclass{article}\\begin{document}\\def\\x{\\x}\\x\\end{document}\n")
    code = f"from pathlib import Path; from reports.pdf import compile_pdf; compile_pdf(Path({str(tmp_path / 'report.tex')!r}), timeout=2)"
    caller = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2])

    def tex_here() -> list:
        out = []
        for p in psutil.process_iter(["cwd"]):
            if p.info.get("cwd") == str(tmp_path):
                out.append(p)
        return out

    deadline = time.monotonic() + 20
    while not any(p.name() == "pdflatex" for p in tex_here()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any(p.name() == "pdflatex" for p in tex_here()), "pdflatex did not start"
    time.sleep(1.0)  # past TeX's banner: once it is looping it writes nothing, so no SIGPIPE would stop it
    caller.send_signal(signal.SIGKILL)  # the caller dies: its own time limit can no longer act
    caller.wait()
    while tex_here() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not tex_here(), "a looping TeX run outlived its caller"


def test_compile_errors_are_short_lines_traced_to_their_section(tmp_path):
    source = render_latex(report()).replace("Prose of discussion", r"\undefinedmacro Prose of discussion")
    (tmp_path / "report.tex").write_text(source)
    result = compile_pdf(tmp_path / "report.tex")
    assert not result.ok
    assert any("Undefined control sequence" in e for e in result.errors)
    assert all(len(e) < 300 and "\n" not in e for e in result.errors)
    assert {section_at_line(source, n) for n in result.error_lines} == {"discussion"}


def test_log_parser_reads_pdftex_errors():
    errors, lines = parse_log("!pdfTeX error: pdflatex (file ./figures/fig1.png): libpng: internal error\n")
    assert errors == ["pdfTeX error: pdflatex (file ./figures/fig1.png): libpng: internal error"] and lines == []
