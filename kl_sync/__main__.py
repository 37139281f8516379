from kl_sync.app.cli import run

run()
