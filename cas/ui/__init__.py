"""The ``cas ui`` web app (needs Flask: installed with cas)."""
