pytest_plugins = ["tests.fixtures.meshsim", "tests.fixtures.browser"]
