#!/usr/bin/env bash
# Deploys the shop behind the gateway of a running `tamaya serve`:
#   TAMAYA=path/to/tamaya TAMAYA_ENDPOINT=http://127.0.0.1:9000 ./deploy.sh
# SHOP_SECRET sets the HS256 secret (default: shop-demo-secret).
set -euo pipefail
cd "$(dirname "$0")"
TAMAYA="${TAMAYA:-tamaya}"
SECRET="${SHOP_SECRET:-shop-demo-secret}"
JWT=(--auth jwt --jwt-secret "$SECRET" --jwt-issuer https://shop.example --jwt-audience shop)

"$TAMAYA" deploy shop-users users --runtime python3 --handler app.handler
"$TAMAYA" deploy shop-products products --runtime nodejs --handler app.handler
"$TAMAYA" deploy shop-orders orders --runtime python3 --handler app.handler

# Re-running replaces the routes.
for key in "GET /users/me" "GET /users/{id}" "GET /products" "GET /products/{id}" \
           "GET /orders" "POST /orders"; do
  "$TAMAYA" route rm "$key" >/dev/null 2>&1 || true
done
"$TAMAYA" route add GET /users/me shop-users "${JWT[@]}"
"$TAMAYA" route add GET '/users/{id}' shop-users "${JWT[@]}"
"$TAMAYA" route add GET /products shop-products
"$TAMAYA" route add GET '/products/{id}' shop-products
"$TAMAYA" route add GET /orders shop-orders "${JWT[@]}" --scope orders:read
"$TAMAYA" route add POST /orders shop-orders "${JWT[@]}" --scope orders:write
"$TAMAYA" route ls
