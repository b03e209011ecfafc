# Source me (bash): `source engines/pulumi/env.sh` puts the engines built by `make pulumi-engines` first on PATH
# and sets up an offline CLI: PULUMI_HOME and a file backend under $TMPDIR, a passphrase (PULUMI_CONFIG_PASSPHRASE
# if already set, else a fixed local one), no update check, no plugin download. What it sets is `make -s pulumi-env`.
_llm_platform_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
eval "$(make -s -C "$_llm_platform_root" --no-print-directory pulumi-env)"
unset _llm_platform_root
