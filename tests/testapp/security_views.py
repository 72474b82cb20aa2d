"""Views of the kinds a security review tries: staff-only shared, user-filtered, Basic-only."""

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from rest_framework import permissions, viewsets
from rest_framework.authentication import BasicAuthentication
from rest_framework.response import Response

from reactive_celery import reactive

from .models import Item
from .serializers import ItemSerializer


@reactive(per_user=False)
class SharedStaffViewSet(viewsets.ReadOnlyModelViewSet):
    """One observer for every staff member; revoking is_staff must end a subscription."""

    queryset = Item.objects.all()
    serializer_class = ItemSerializer
    permission_classes = [permissions.IsAdminUser]


@reactive(per_user=False)
class WronglySharedOwnViewSet(viewsets.ReadOnlyModelViewSet):
    """Filters by user yet claims per_user=False: the subscribe must be refused."""

    serializer_class = ItemSerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self):
        user = self.request.user
        return Item.objects.filter(owner=user if user.is_authenticated else None)


@reactive(per_user=False, primary_key="id")
class SettlingClockViewSet(viewsets.ViewSet):
    """Shared, user-independent, but its first reading differs from every later one.

    Stands for a clock or a counter: two evaluations a moment apart can disagree
    without the view depending on the user.
    """

    permission_classes = [permissions.AllowAny]
    readings = 0

    def list(self, request):
        SettlingClockViewSet.readings += 1
        return Response([{"id": 1, "settled": SettlingClockViewSet.readings > 1}])


@reactive
class BasicOnlyViewSet(viewsets.ReadOnlyModelViewSet):
    """Accepts HTTP Basic only: a session cookie does not sign anyone in here."""

    queryset = Item.objects.all()
    serializer_class = ItemSerializer
    authentication_classes = [BasicAuthentication]
    permission_classes = [permissions.IsAuthenticated]


@reactive
class ExplodingViewSet(viewsets.ReadOnlyModelViewSet):
    """Raises with a secret in its message once an item named 'explode' exists."""

    queryset = Item.objects.all()
    serializer_class = ItemSerializer

    def list(self, request, *args, **kwargs):
        if Item.objects.filter(name="explode").exists():
            raise ValueError("password=hunter2 at db.internal:5432")
        return super().list(request, *args, **kwargs)


@csrf_exempt
@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    """Django's logout for the tests (the admin's needs a CSRF token)."""
    logout(request)
    return HttpResponse(status=204)
