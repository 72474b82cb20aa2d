from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand

from tasks.models import Task

#: Demo accounts, all with this password; they may log in to the admin.
PASSWORD = "demo"
SUPERUSER = "admin"
STAFF = ["alice", "bob"]

#: (title, owner, done), oldest first.
SAMPLES = [
    ("Open this page in a second window", None, False),
    ("Log in as alice (password demo) for your own list", "alice", False),
    ("Tick a task in the admin", "bob", False),
    ("POST a task to /api/tasks/", None, False),
    ("Run manage.py make_changes --rate 2 --duration 30", "alice", False),
    ("Read the protocol", "bob", True),
    ("Start the demo", "admin", True),
]


class Command(BaseCommand):
    help = (
        f"Create the demo accounts ({SUPERUSER}, {', '.join(STAFF)}; password {PASSWORD!r}) "
        "when they are missing, and a few sample tasks when there are none."
    )

    def handle(self, *args, **options):
        users = self.create_users()
        if Task.objects.exists():
            self.stdout.write("Tasks exist; no samples loaded.")
            return
        # One at a time and oldest first, so the first sample is listed on top.
        for title, owner, done in reversed(SAMPLES):
            Task.objects.create(title=title, owner=users.get(owner), done=done)
        self.stdout.write(f"Loaded {len(SAMPLES)} sample tasks.")

    def create_users(self):
        """The demo accounts by name; existing ones are left as they are."""
        User = get_user_model()
        users = {}
        task_permissions = Permission.objects.filter(content_type__app_label="tasks")
        for name in [SUPERUSER, *STAFF]:
            user = User.objects.filter(username=name).first()
            if user is None:
                if name == SUPERUSER:
                    user = User.objects.create_superuser(name, password=PASSWORD)
                else:
                    # Staff, so the admin's login page (the demo's only one) lets them in.
                    user = User.objects.create_user(name, password=PASSWORD, is_staff=True)
                    user.user_permissions.set(task_permissions)
                self.stdout.write(f"Created user {name} (password {PASSWORD!r}).")
            users[name] = user
        return users
