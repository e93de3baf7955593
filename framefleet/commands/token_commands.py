"""``framefleet token add|list|revoke``: the coordinator's client tokens file. A running
coordinator picks up every change at its next call (coordinator/tokens.py), so a revoked token
is refused at once, with no restart."""

from __future__ import annotations

import argparse
import json
import sys

from framefleet.coordinator.tokens import Role, add_token, list_tokens, revoke_token


def _fail(e: Exception) -> int:
    print(f"error: {e}", file=sys.stderr)
    return 2


def cmd_add(args: argparse.Namespace) -> int:
    try:
        token = add_token(args.tokens, args.name, Role(args.role))
    except (OSError, ValueError, KeyError) as e:
        return _fail(e)
    print(token)
    print(
        f"token for {args.name!r} ({args.role}) added to {args.tokens}; it is shown only now",
        file=sys.stderr,
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    try:
        entries = list_tokens(args.tokens)
    except (OSError, ValueError, KeyError) as e:
        return _fail(e)
    if args.json:
        rows = [{"name": t.name, "role": t.role, "id": t.id, "created": t.created} for t in entries]
        print(json.dumps(rows, indent=2))
        return 0
    width = max([len("NAME"), *(len(t.name) for t in entries)])
    print(f"{'NAME':<{width}}  {'ROLE':<6}  {'ID':<12}  CREATED")
    for t in entries:
        print(f"{t.name:<{width}}  {t.role.value:<6}  {t.id:<12}  {t.created or '-'}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    try:
        removed = revoke_token(args.tokens, args.name, args.id)
    except (OSError, ValueError, KeyError, LookupError) as e:
        return _fail(e)
    print(f"revoked {removed} token(s) of {args.name!r} in {args.tokens}", file=sys.stderr)
    return 0
