# The compose command of a bundle scripts/up started (sourced by scripts that act on a
# running bundle): its project, the env file scripts/up wrote, the site's compose files.
# Sets PROJECT, ENV_FILE, COMPOSE (an array) and IMAGE (the appliance image it runs).

bundle_compose() {
  PROJECT=${APPLIANCE_PROJECT:-appliance}
  ENV_FILE=compose/.state/$PROJECT.env
  [ -f "$ENV_FILE" ] || die "no bundle '$PROJECT' was started from this checkout (scripts/up writes $ENV_FILE)"
  local files=(-f compose/compose.yaml) overrides file
  IFS=: read -ra overrides <<<"$(sed -n 's/^OVERRIDE_FILES=//p' "$ENV_FILE" | tail -1)"
  for file in "${overrides[@]}"; do
    if [ -f "$file" ]; then files+=(-f "$file"); fi
  done
  COMPOSE=(docker compose -p "$PROJECT" "${files[@]}" --env-file "$ENV_FILE")
  IMAGE=$(sed -n 's/^APPLIANCE_IMAGE=//p' "$ENV_FILE" | tail -1)
}
