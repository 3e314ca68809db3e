//! Installs what the API serves to browsers from npm: GraphiQL and React, at the versions
//! `web/package-lock.json` pins (checked against their integrity hashes by `npm ci`), into
//! `OUT_DIR`, where `src/console.rs` includes them into the binary. Nothing is fetched at run
//! time: the server works without a network.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

const FILES: [&str; 4] = [
    "node_modules/graphiql/graphiql.min.js",
    "node_modules/graphiql/graphiql.min.css",
    "node_modules/react/umd/react.production.min.js",
    "node_modules/react-dom/umd/react-dom.production.min.js",
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let web = manifest.join("../web");
    for file in ["package.json", "package-lock.json"] {
        println!("cargo:rerun-if-changed={}", web.join(file).display());
    }
    println!("cargo:rerun-if-env-changed=NPM");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("web");
    fs::create_dir_all(&out).expect("create OUT_DIR/web");
    let lock = fs::read(web.join("package-lock.json")).expect("read web/package-lock.json");
    let stamp = out.join("installed-from.lock");
    let installed = fs::read(&stamp).is_ok_and(|s| s == lock) && FILES.iter().all(|f| out.join(f).is_file());
    if !installed {
        install(&web, &out);
        fs::write(&stamp, &lock).expect("write the install stamp");
    }
}

fn install(web: &Path, out: &Path) {
    for file in ["package.json", "package-lock.json"] {
        fs::copy(web.join(file), out.join(file)).expect("copy the npm manifest into OUT_DIR");
    }
    let npm = env::var("NPM").unwrap_or_else(|_| "npm".to_owned());
    let status = Command::new(&npm)
        .args(["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(out)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "`{npm} ci` in {} failed ({status}): the API embeds GraphiQL from npm; it needs the npm registry once per build directory",
            out.display()
        ),
        Err(error) => panic!(
            "cannot run `{npm}` ({error}): building the API needs Node.js and npm (apt-get install nodejs npm) to fetch GraphiQL; set NPM to use another npm"
        ),
    }
    for file in FILES {
        assert!(out.join(file).is_file(), "`npm ci` did not install {file}");
    }
}
