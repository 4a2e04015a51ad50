//! Prints the CustomResourceDefinitions of Norn's resources as YAML (the content of `crds/`).

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let yaml = match norn_operator::crd::crd_yaml() {
        Ok(y) => y,
        Err(e) => {
            eprintln!("crdgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::io::stdout().lock().write_all(yaml.as_bytes()) {
        eprintln!("crdgen: writing stdout: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
