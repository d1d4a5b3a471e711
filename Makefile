# The commands a newcomer needs. Everything they install goes into
# ~/.cache/sicantik_connector (override with SICANTIK_CACHE).
PYTHON ?= python3

.PHONY: run test bench i18n kill-test deploy-test

run:  ## Odoo 18 on 127.0.0.1:8069 with the addon, plus the SICANTIK sandbox
	$(PYTHON) dev/devtool.py run

test:  ## pure-Python tier, static checks, Odoo tier
	$(PYTHON) dev/devtool.py test

bench:  ## benchmarks, one line each, ending in ratio=
	$(PYTHON) dev/devtool.py bench

i18n:  ## export the addon's terms to i18n/*.pot and merge them into i18n/id.po
	$(PYTHON) dev/devtool.py i18n

kill-test:  ## SIGKILL a real Odoo during its jobs, restart it, check nothing is lost
	$(PYTHON) dev/devtool.py kill-test

deploy-test:  ## 2 prefork Odoo servers, 2 connectors on one server: one rate limit, then kills
	$(PYTHON) dev/devtool.py deploy-test
