"""The exception tree of Postwright, drawn once here.

Every error Postwright raises on purpose derives from `PostwrightError`; the command line
turns one into its `exit_code` and a one-line message (cli/main.py). The subclasses live
next to the code that raises them:

PostwrightError                   exit 2 at the command line: could not run
├── UsageError                    bad command-line input (here)
│   └── NothingToCheck            no automations where a check looked (cli.scope)
├── GitError                      a git command failed or an object is missing (here)
│   ├── GitTimeout                a git command ran past its time limit (here)
│   └── FetchError                a clone or fetch failed, with its reason (repo.git_remote)
├── SettingsError                 postwright.yaml or the environment is unusable (cli.settings)
├── RunnerUnavailable             `--against URL` got no usable answer (checking.runner_client)
├── RenderError                   a template failed to render (templating.sandbox)
├── RenderUnavailable             the render workers cannot render now (templating.render)
├── StoreError                    the store could not do what was asked (store.errors)
│   ├── EventConflict             an event id seen before with another body
│   ├── ReplicaLockError          a second runner on one SQLite file (store)
│   ├── SchemaTooNew              the database was migrated by a newer runner (store.versions)
│   └── TransactionAborted        the database ended the whole transaction
│       └── StoreUnavailable      the database, not the work, failed: retry the whole
├── ProviderError                 a provider did not accept a message (providers.base)
├── ProviderConfigError           a configured provider cannot be built (providers.base)
├── WebhookRejected               a provider webhook that is not accepted (providers.webhooks)
├── NotCaughtUp                   events before a request still wait (engine.worker)
├── MassDeleteRefused             a reload would unload most automations (gitops.reload)
├── ScenarioError                 a scenario file that cannot run (simulation.scenario)
├── CannotRun                     scenario files or automations that cannot run (simulation.session)
├── SimulationTooLong             a scenario needs too many clock steps (simulation.run)
├── WebhookRefused                a git push webhook unsigned or forged (gitops.git_webhook)
├── AuthError                     a request is not authenticated (server.auth)
├── RequestError                  a request the API refuses, with its answer (server.api.models)
└── JsonRefused                   a body that is not acceptable JSON (server.strict_json)

Findings about automation files are never exceptions: they are `Finding` values collected
by checking (core/findings.py).
"""


class PostwrightError(Exception):
    """Root of every error Postwright raises on purpose."""

    exit_code = 2


class UsageError(PostwrightError):
    """The command line asked for something that cannot be done."""


class GitError(PostwrightError):
    """A git command failed, or the history lacks an object it needs."""


class GitTimeout(GitError):
    """A git command ran past its time limit and was stopped."""
