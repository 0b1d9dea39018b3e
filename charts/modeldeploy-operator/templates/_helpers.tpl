{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "modeldeploy-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release name already contains it. */}}
{{- define "modeldeploy-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The recommended labels on every object of the chart. */}}
{{- define "modeldeploy-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "modeldeploy-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modeldeploy
app.kubernetes.io/component: operator
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "modeldeploy-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modeldeploy-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The labels that select the operator pods (a subset of the labels above; never changes on upgrade). */}}
{{- define "modeldeploy-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modeldeploy-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator image: repository@digest when a digest is given, else repository:tag (default appVersion). */}}
{{- define "modeldeploy-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* True ("true") when several replicas share the work through kopf peering. */}}
{{- define "modeldeploy-operator.ha" -}}
{{- if gt (int .Values.replicas) 1 }}true{{ end }}
{{- end }}

{{/* The kopf peering name (KopfPeering per watched namespace, or one ClusterKopfPeering). */}}
{{- define "modeldeploy-operator.peeringName" -}}
{{- default (include "modeldeploy-operator.fullname" .) .Values.peering.name }}
{{- end }}

{{/*
The rules the operator needs in every namespace it watches; a ClusterRole carries them in
all-namespaces mode, a Role per namespace in namespaced mode. Each verb is one the operator uses
(modeldeploy/reconcile.py, k8s/client.py and kopf's watches); no wildcards, no Secrets.
*/}}
{{- define "modeldeploy-operator.namespacedRules" -}}
# The operator reads nothing with GET: kopf's watches (list + watch) fill its cache.
# Watch ModelDeployments, write only their status (merge patch).
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments]
  verbs: [list, watch]
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments/status]
  verbs: [patch]
# Children carry ownerReferences with blockOwnerDeletion; with OwnerReferencesPermissionEnforcement
# that needs update on the owner's finalizers.
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments/finalizers]
  verbs: [update]
# Optimization Jobs are created once (deterministic names) and deleted when no longer wanted.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, watch, create, delete]
# Our optimizer and serving pods (a label-selected watch): the optimization result, waiting reasons.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
# Serving children: server-side apply (patch; create when absent), deleted when no longer wanted.
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [list, watch, create, patch, delete]
# rollout.trafficRouting.gatewayAPI: the HTTPRoute with the canary's weight. Granting a kind whose
# CRDs are not installed is allowed; the operator then neither lists nor watches it.
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [list, watch, create, patch, delete]
# Whether the claims a ModelDeployment mounts exist (status says which one is missing).
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [list, watch]
# An Event on every transition a user cares about (core/v1: kubectl describe sorts by lastTimestamp).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}

{{/* Cross-value checks the schema cannot express. */}}
{{- define "modeldeploy-operator.validate" -}}
{{- if eq (int .Values.livenessPort) (int .Values.metrics.port) }}
{{- fail "livenessPort and metrics.port must differ: the operator serves /healthz and /metrics on separate ports" }}
{{- end }}
{{- end }}

{{/* The pod template of the operator, shared by the Deployment (1 replica) and the StatefulSet (HA). */}}
{{- define "modeldeploy-operator.podTemplate" -}}
metadata:
  labels:
    {{- include "modeldeploy-operator.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  serviceAccountName: {{ include "modeldeploy-operator.serviceAccountName" . }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  enableServiceLinks: false
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  # kopf stops its handlers and leaves the peering on SIGTERM; 30 s covers a reconcile in flight.
  terminationGracePeriodSeconds: 30
  containers:
    - name: operator
      image: {{ include "modeldeploy-operator.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      # The image's ENTRYPOINT is `modeldeploy`; these are the arguments of `modeldeploy run`.
      args:
        - run
        {{- if .Values.watchNamespaces }}
        {{- range .Values.watchNamespaces }}
        - --namespace={{ . }}
        {{- end }}
        {{- else }}
        - --all-namespaces
        {{- end }}
        - --log-format={{ .Values.logFormat }}
        - --resync-seconds={{ .Values.resyncSeconds }}
        - --workers={{ .Values.workers }}
        {{- with .Values.signing.defaultKeySecret }}
        - --default-signing-key-secret={{ . }}
        {{- end }}
        {{- if .Values.verbose }}
        - --verbose
        {{- end }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        # Ports come from the environment (read by `modeldeploy run`), so the probes, the Service and
        # the process always agree on one value.
        - name: MODELDEPLOY_LIVENESS_PORT
          value: {{ .Values.livenessPort | quote }}
        - name: MODELDEPLOY_METRICS_PORT
          value: {{ .Values.metrics.port | quote }}
        # kopf's identity in the peering status and logs: the pod name.
        - name: POD_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- if include "modeldeploy-operator.ha" . }}
        - name: MODELDEPLOY_PEERING
          value: {{ include "modeldeploy-operator.peeringName" . | quote }}
        # Distinct priorities per replica (kopf pauses every operator of a peering when two live ones
        # share one): `ordinal` makes `modeldeploy run` derive 100 - N from its StatefulSet pod name
        # (HOSTNAME <name>-N), so pod 0 is the preferred leader and scaling never moves the leadership.
        - name: MODELDEPLOY_PRIORITY
          value: ordinal
        {{- end }}
        # The root file system is read-only; Python and kopf write nothing but may look for $HOME.
        - name: HOME
          value: /tmp
        - name: PYTHONUNBUFFERED
          value: "1"
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: health
          containerPort: {{ .Values.livenessPort }}
          protocol: TCP
        - name: metrics
          containerPort: {{ .Values.metrics.port }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: health
        initialDelaySeconds: 10
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /healthz
          port: health
        periodSeconds: 10
        timeoutSeconds: 5
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  volumes:
    # The only writable place (the root file system is read-only).
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/*
checkov suppressions on the operator workload, each with its reason. The image ones apply only while
no digest is set, the UID one only while the UID is below checkov's 10000: set image.digest or a
higher runAsUser and the check runs (and passes) again.
*/}}
{{- define "modeldeploy-operator.checkovSkips" -}}
checkov.io/skip1: CKV_K8S_38=The operator is a Kubernetes API client; it needs its ServiceAccount token, which carries only the chart's least-privilege RBAC.
{{- if not .Values.image.digest }}
checkov.io/skip2: CKV_K8S_43=The image digest is known only once the image is built and pushed; set image.digest to pin it.
checkov.io/skip3: CKV_K8S_15=Release tags are immutable and kind-loaded images must not be pulled; with image.digest set IfNotPresent passes this check.
{{- end }}
{{- $uid := .Values.securityContext.runAsUser | default .Values.podSecurityContext.runAsUser | int }}
{{- if lt $uid 10000 }}
checkov.io/skip4: CKV_K8S_40=UID {{ $uid }} is the image's USER; the pod is non-root, drops all capabilities, forbids privilege escalation and has a read-only root file system; set podSecurityContext/securityContext.runAsUser to 10000 or more to lift this (the image runs as any UID).
{{- end }}
{{- end }}
