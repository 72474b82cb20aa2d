"""Views of the ticket tests: one that accepts tokens only, one that accepts sessions only."""

from rest_framework import permissions, viewsets
from rest_framework.authentication import SessionAuthentication, TokenAuthentication

from reactive_celery import reactive

from .models import Item
from .serializers import ItemSerializer


@reactive
class TokenOwnViewSet(viewsets.ReadOnlyModelViewSet):
    """A user's own items, for DRF token authentication only: no cookie signs anyone in."""

    serializer_class = ItemSerializer
    authentication_classes = [TokenAuthentication]
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self):
        return Item.objects.filter(owner=self.request.user)


@reactive
class SessionOnlyViewSet(viewsets.ReadOnlyModelViewSet):
    """Every item, for session authentication only: a token-issued ticket is refused."""

    queryset = Item.objects.all()
    serializer_class = ItemSerializer
    authentication_classes = [SessionAuthentication]
    permission_classes = [permissions.IsAuthenticated]
