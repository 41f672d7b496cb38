"""``guestcomms dkim``: create the DKIM key of a sending domain and print its DNS record.

The key is written to ``GUESTCOMMS_DKIM_KEYS_DIR`` as ``<domain>.<selector>.pem`` (owner-only);
the private key is never printed. See :mod:`guestcomms.channels.dkim_signing`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from guestcomms.channels.dkim_signing import (
    DEFAULT_KEY_BITS,
    dns_record_name,
    dns_txt_strings,
    dns_txt_value,
    generate_key,
    key_path,
    write_key,
)
from guestcomms.commands.support import err_console, fail, settings_or_exit
from guestcomms.errors import GuestcommsError

dkim_app = typer.Typer(help="DKIM keys of the sending domains.", no_args_is_help=True)


@dkim_app.command("keygen")
def keygen(
    domain: Annotated[str, typer.Argument(help="the sending domain, as in the From address")],
    selector: Annotated[
        str | None, typer.Option(help="the DKIM selector (default GUESTCOMMS_DKIM_SELECTOR)")
    ] = None,
    bits: Annotated[int, typer.Option(help="RSA key size", min=1024, max=4096)] = (
        DEFAULT_KEY_BITS
    ),
    force: Annotated[bool, typer.Option("--force", help="replace an existing key")] = False,
) -> None:
    """Create an RSA key for DOMAIN and print the TXT record to publish in its DNS."""
    settings = settings_or_exit()
    if settings.dkim_keys_dir is None:
        raise fail("dkim_keys_dir is not set (GUESTCOMMS_DKIM_KEYS_DIR)")
    selector = selector or settings.dkim_selector
    domain = domain.lower()
    try:
        path = key_path(settings.dkim_keys_dir, domain=domain, selector=selector)
        key = generate_key(bits)
        write_key(path, key, overwrite=force)
    except GuestcommsError as e:
        raise fail(str(e)) from None
    value = dns_txt_value(key.public_key())
    strings = dns_txt_strings(value)
    name = dns_record_name(domain=domain, selector=selector)
    # plain print: a console would wrap the long value, and scripts read these lines
    print(f"name:  {name}")
    print(f"value: {value}")
    # the value holds no quote or backslash (tags and base64), so each string is quoted as is
    quoted = " ".join(f'"{string}"' for string in strings)
    print(f"zone:  {name}. IN TXT ( {quoted} )")
    err_console.print(
        f"Key written to {path}. Publish the TXT record above"
        + (
            f"; it is longer than 255 characters, so DNS stores it as {len(strings)} strings"
            " (the zone line), which resolvers join back together."
            if len(strings) > 1
            else "."
        ),
        highlight=False,
        soft_wrap=True,
    )
