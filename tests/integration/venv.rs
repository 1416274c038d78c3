//! A real venv, a real upgrade: `python3 -m venv`, pydantic 1.10 installed
//! by pip, checkpointed, then `pip install --upgrade` to pydantic 2.11,
//! which replaces the package and its dist-info and adds annotated_types,
//! pydantic_core and typing_inspection (each a package directory beside its
//! `NAME-VERSION.dist-info`, the names that sort between a directory and its
//! children). Restore must give back the checkpoint's venv byte for byte,
//! undo the upgraded one, redo the checkpoint's again. The wheels come from
//! `target/wheels`, which ./scripts/test fills; nothing reaches an index.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Project;
use crate::restore::{differences, snapshot};

const OLD: &str = "pydantic==1.10.21";
const NEW: &str = "pydantic==2.11.7";

fn wheels() -> PathBuf {
    let w = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/wheels");
    let has = |prefix: &str| {
        std::fs::read_dir(&w)
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with(prefix)))
            .unwrap_or(false)
    };
    for wheel in [
        "pydantic-1.10.21",
        "pydantic-2.11.7",
        "pydantic_core-2.33.2",
        "annotated_types-0.8.0",
        "typing_inspection-0.4.5",
        "typing_extensions-4.16.0",
    ] {
        assert!(
            has(wheel),
            "{wheel} is missing from {}: ./scripts/test downloads the venv test's wheels",
            w.display()
        );
    }
    w
}

/// Runs `program args` in `dir`, which must succeed; its stdout.
#[track_caller]
fn run(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(dir.join(program))
        .args(args)
        .current_dir(dir)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn pip_install(dir: &Path, wheels: &Path, args: &[&str]) {
    let mut a = vec!["install", "-q", "--no-index", "--find-links"];
    let w = wheels.to_string_lossy();
    a.push(&w);
    a.extend(args);
    run(dir, "venv/bin/pip", &a);
}

/// What the venv's Python imports: pydantic's version, and whether the
/// packages only 2.x needs are there.
fn imports(dir: &Path) -> String {
    run(
        dir,
        "venv/bin/python",
        &[
            "-c",
            "import pydantic, importlib.util as u; print(pydantic.VERSION, *(n for n in ('annotated_types', 'pydantic_core', 'typing_inspection') if u.find_spec(n)))",
        ],
    )
}

#[test]
fn a_venv_upgraded_by_pip_is_restored_byte_for_byte() {
    let wheels = wheels();
    let p = Project::new();
    p.file(
        "backout.toml",
        "[plan]\nname = \"venv\"\n\n[capture]\npaths = [\"venv/\"]\n",
    );
    let dir = p.path();
    let out = Command::new("python3")
        .args(["-m", "venv", "venv"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    pip_install(dir, &wheels, &[OLD]);
    assert_eq!(imports(dir), "1.10.21");
    p.run(&["checkpoint"]).success();
    let at_cp1 = snapshot(dir, &["venv"]);

    pip_install(dir, &wheels, &["--upgrade", NEW]);
    assert_eq!(imports(dir), "2.11.7 annotated_types pydantic_core typing_inspection");
    let upgraded = snapshot(dir, &["venv"]);
    let site = "venv/lib/python3.11/site-packages";
    let has = |name: &str, tree: &crate::restore::Tree| tree.keys().any(|k| k == &format!("{site}/{name}"));
    assert!(has("annotated_types", &upgraded) && has("annotated_types-0.8.0.dist-info", &upgraded));
    assert!(has("pydantic-1.10.21.dist-info", &at_cp1) && !has("pydantic-1.10.21.dist-info", &upgraded));

    let dry = p.run(&["restore", "cp-1", "--dry-run"]);
    dry.success();
    for removed in ["annotated_types/", "annotated_types-0.8.0.dist-info/", "pydantic_core/"] {
        assert!(
            dry.stdout().contains(&format!("remove {site}/{removed}")),
            "{removed}: {}",
            dry.stdout()
        );
    }
    p.run(&["restore", "cp-1"]).success();
    let now = snapshot(dir, &["venv"]);
    assert!(
        now == at_cp1,
        "the venv is byte for byte the checkpoint's: {:#?}",
        differences(&now, &at_cp1)
    );
    assert_eq!(imports(dir), "1.10.21", "and pydantic 1.10 imports, alone");

    p.run(&["undo"]).success();
    let now = snapshot(dir, &["venv"]);
    assert!(
        now == upgraded,
        "undo: the upgraded venv, byte for byte: {:#?}",
        differences(&now, &upgraded)
    );
    assert_eq!(imports(dir), "2.11.7 annotated_types pydantic_core typing_inspection");

    p.run(&["redo"]).success();
    let now = snapshot(dir, &["venv"]);
    assert!(
        now == at_cp1,
        "redo: the checkpoint's venv again: {:#?}",
        differences(&now, &at_cp1)
    );
    assert_eq!(imports(dir), "1.10.21");
}
